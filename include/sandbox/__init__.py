"""Local stand-ins for the HubSpot and Adobe Experience Platform APIs (see README, "The sandbox")."""
