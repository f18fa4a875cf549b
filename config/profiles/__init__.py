"""Built-in device profiles, installed as a package so a wheel carries them."""
