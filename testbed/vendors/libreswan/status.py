"""placeholder"""
def snapshot(pluto):
    return {"raw_showstates": pluto.whack("--showstates"), "raw_traffic": pluto.whack("--trafficstatus")}
