"""Stage 9: building images from a Containerfile (chapter 09)."""
