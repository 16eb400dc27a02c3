from radbench.cli import app

app()
