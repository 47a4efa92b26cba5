"""The course around the book: the student edition, its grader and its hints (issue 18)."""
