"""Terminal helpers shared by the CLI and the wizard (rich when on a terminal, plain text when piped); below
both, so neither front end imports the other."""
