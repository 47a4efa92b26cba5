"""placeholder"""
def main(as_json: bool) -> int:
    return 0
