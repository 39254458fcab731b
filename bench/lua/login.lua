-- POST /auth/login with one client's credentials ($BENCH_USERNAME / $BENCH_PASSWORD).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.path = "/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"username": "%s", "password": "%s"}', os.getenv("BENCH_USERNAME"), os.getenv("BENCH_PASSWORD"))
