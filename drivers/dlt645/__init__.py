"""DL/T 645-2007 meters: the sans-io codec (``codec``) and the data identifier table (``dis``)."""
