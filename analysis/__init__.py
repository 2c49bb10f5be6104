"""DumpScope analyses: pure Python, never imports Qt."""
