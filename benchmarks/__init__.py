"""talkinghead.benchmarks"""
