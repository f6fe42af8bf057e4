"""Sound: voice engines (text to speech), mixing and loudness, audio provenance."""
