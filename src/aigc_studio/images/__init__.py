"""Design sketches on the image models: sampling loops, the sketch pipeline and PNG provenance."""
