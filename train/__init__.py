"""talkinghead.train"""
