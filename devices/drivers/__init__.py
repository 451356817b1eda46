"""One driver per device kind, all behind devices.drivers.base.Device."""
