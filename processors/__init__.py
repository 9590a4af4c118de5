"""The stream processors (stages): one package per stage, plus the runtime that runs a stage as a faust worker."""
