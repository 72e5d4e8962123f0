import psycopg
def test_x(dsn, psql):
    print("DSN", dsn, psql)
    with psycopg.connect(dsn) as c:
        print(c.execute("select version()").fetchone())
        print(c.execute("select type, database, user_name, address, auth_method from pg_hba_file_rules").fetchall())
        print(c.execute("show listen_addresses").fetchone(), c.execute("show port").fetchone(), c.execute("show unix_socket_directories").fetchone(), c.execute("show password_encryption").fetchone())
