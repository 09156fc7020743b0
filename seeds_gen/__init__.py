"""Raw data for the recommender: a synthetic click world and importers for real logs."""
