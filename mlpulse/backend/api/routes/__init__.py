"""HTTP routes, one `APIRouter` per resource; mlpulse/backend/app.py includes them."""
