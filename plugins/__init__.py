"""Implementations of the zope.interface seams to outside systems: push, share-out, geo, blobs."""
