"""Train, evaluate and serve a click-through-rate model from the dbt-built feature mart."""
