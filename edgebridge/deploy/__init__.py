"""What an operator needs to deploy the cloud side securely: certificates, broker credentials, ACLs."""
