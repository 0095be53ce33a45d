"""Wire formats only: parse → call a service → serialise; AWS error shapes."""
