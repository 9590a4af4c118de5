"""The intent stage: intent by embedding kNN, sentiment by VADER."""
