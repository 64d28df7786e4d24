"""The in-memory sparse tier (issue 6): postings in numpy, kept current by the change log."""
