"""talkinghead.models"""
