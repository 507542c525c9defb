"""talkinghead.export"""
