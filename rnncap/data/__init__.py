"""Data: files -> the CS231n data dictionary, vocabularies, the built-in shapes dataset."""
