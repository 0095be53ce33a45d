"""The rules: functions, invoke, VPCs, ENIs. No HTTP, no kernel calls."""
