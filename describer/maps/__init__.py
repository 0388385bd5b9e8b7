"""The MAPS analyzer."""
