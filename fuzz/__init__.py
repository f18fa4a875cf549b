"""Fuzzing the codecs and the command parser (`make fuzz`): not a benchmark, a hunt for crashes."""
