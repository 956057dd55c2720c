"""Task files, corpora and their text: from a task name to token ids, and the reference
numbers a task cites."""
