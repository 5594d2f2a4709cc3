"""Position for vehicle units: NMEA 0183 (serial or a replayed log) and gpsd, as a fix per read."""
