"""How bytes move to and from a device: serial ports and Bluetooth LE."""
