"""The test suite: real server processes on 127.0.0.1, plus unit tests of pure modules."""
