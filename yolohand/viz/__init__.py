"""Viewers: overlays (draw), two-submission comparison reports (compare), the Streamlit app."""
