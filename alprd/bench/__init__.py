"""`alprd bench`: the unit's pipeline on a recorded video, with a report a person can judge."""
