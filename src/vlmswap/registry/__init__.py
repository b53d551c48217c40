"""What the gateway may run and who may ask: the registry file, profiles, and model files on the Hub."""
