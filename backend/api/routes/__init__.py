"""HTTP routes, one `APIRouter` per resource; backend/app.py includes them."""
