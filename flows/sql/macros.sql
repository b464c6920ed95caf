-- Great-circle distance in km on a sphere of radius 6371.0088 km; NULL when a point is NULL.
create or replace macro haversine_km(lat1, lng1, lat2, lng2) as
    2 * 6371.0088 * asin(sqrt(
        pow(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * pow(sin(radians(lng2 - lng1) / 2), 2)
    ))
