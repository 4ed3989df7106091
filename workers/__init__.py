"""The log relay and the Gearman worker pool (gevent); never imports twisted.internet."""
