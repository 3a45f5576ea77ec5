"""The annotation platform (paper section IV-A, Fig. 4b): a project folder of videos, strokes marked by several
annotators in a local web page, stored in one SQLite file, with agreement, consensus and model proposals."""
