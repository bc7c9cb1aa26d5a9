"""The sandbox's fixed demo credentials. They open nothing but the local sandbox servers."""

HUBSPOT_PRIVATE_APP_TOKEN = "pat-na1-sandbox-0000-private-app-token"
HUBSPOT_CLIENT_ID = "sandbox-hubspot-client-id"
HUBSPOT_CLIENT_SECRET = "sandbox-hubspot-client-secret"
HUBSPOT_REFRESH_TOKEN = "sandbox-hubspot-refresh-token"
HUBSPOT_PORTAL_ID = 12345678

AEP_CLIENT_ID = "sandbox-aep-client-id"
AEP_CLIENT_SECRET = "sandbox-aep-client-secret"
AEP_ORG_ID = "SANDBOX0000000000000000@AdobeOrg"
AEP_SANDBOX_NAME = "prod"
AEP_DATASET_ID = "5f0c0e1e2a3b4c5d6e7f8a9b"  # the profile-export dataset the seed command creates
AEP_MERGE_POLICY_ID = "b2c9a0e1-1d3f-4a5b-9c8d-7e6f5a4b3c2d"
