"""talkinghead.bindings"""
