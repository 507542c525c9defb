"""talkinghead.sdk"""
