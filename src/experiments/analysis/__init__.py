"""Reading runs after the fact: confidence intervals and paired tests, failure breakdowns, plots, comparisons."""
