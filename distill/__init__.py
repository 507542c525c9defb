"""talkinghead.distill"""
