"""The IOC API: FastAPI app for technicians, operators, developers and administrators."""
