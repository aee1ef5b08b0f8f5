"""The parameter server: a versioned model that workers pull from and push updates to."""
