process.stdout.write("berth CLI: not built yet\n");
