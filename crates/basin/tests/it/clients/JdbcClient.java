// pgJDBC against `basin serve` as the analyst: prepared statements past prepareThreshold
// (server-side from the 5th execution), a cursor fetch with setFetchSize, and the metadata
// queries tools run.
import java.sql.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/basin?sslmode=disable&prepareThreshold=3";
        try (Connection c = DriverManager.getConnection(url, "ana", "analyst-pw")) {
            try (PreparedStatement ps = c.prepareStatement("SELECT name, email FROM silver.customer WHERE id = ?")) {
                for (int i = 0; i < 8; i++) {
                    ps.setLong(1, 1 + (i % 2));
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        String email = rs.getString(2);
                        check(email.equals(i % 2 == 0 ? "****@acme.com" : "****@x.org"), "masked: " + email);
                    }
                }
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(1);
                int n = 0;
                try (ResultSet rs = s.executeQuery("SELECT id FROM silver.customer ORDER BY id")) {
                    while (rs.next()) n++;
                }
                check(n == 3, "three rows fetched one at a time, got " + n);
            }
            c.commit();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM silver.secret");
                check(false, "silver.secret was readable");
            } catch (SQLException e) {
                check("42501".equals(e.getSQLState()), "42501, got " + e.getSQLState());
            }
            StringBuilder tables = new StringBuilder();
            try (ResultSet rs = c.getMetaData().getTables(null, "silver", "%", null)) {
                while (rs.next()) tables.append(rs.getString("TABLE_NAME")).append(' ');
            }
            check(tables.toString().trim().equals("customer"), "tables: " + tables);
        }
        System.out.println("ok");
    }
}
