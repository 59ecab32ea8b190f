"""`python -m pipeline demo`: a page that predicts in the browser with the pushed TF.js model."""
