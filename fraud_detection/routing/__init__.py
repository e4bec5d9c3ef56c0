"""Champion and challenger: transaction ids, the canary and shadow shares, the routed scores."""
