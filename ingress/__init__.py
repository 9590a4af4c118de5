"""The ingress: caller WebSockets (browser, Twilio), edge security, egress routing, pages."""
