"""Every result type and the shared vocabulary: what the analyses produce and
the views, rules and reports consume. Importing from here never runs an
analysis and never imports the session."""
