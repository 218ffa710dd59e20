"""usagemeter: exact, fast token and cost reports for AI-agent runtimes."""

__version__ = "0.1.0"
